"""The live aggregator's edges: the OCPP server (CSMS), the control loop, and simulated
chargers that speak real OCPP to it."""
