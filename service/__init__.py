"""The scorer's HTTP service and portal page (the edge around the pure core)."""
