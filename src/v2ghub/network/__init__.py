"""Distribution feeders: pandapower networks, batched power flow, feeder limits."""
