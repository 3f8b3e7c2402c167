"""End-to-end tests: the whole pipeline on the local stack (devstack), over loopback HTTP and moto."""
