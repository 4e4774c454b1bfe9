"""The composition root: the service registry and the program that wires mesh, gateway and services."""
