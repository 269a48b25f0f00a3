"""The command line's jobs as library calls: a day-ahead plan from files, settling a run
folder or a live day, a party's statement. The command line only parses and prints."""
