"""The demo: a protected pair on the lab network, a client workload, a primary kill."""
