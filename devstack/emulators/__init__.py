"""Provider emulators for the local stack: fal's queue (fal.py) and Mirako's talking avatar (mirako.py).

Import them from their modules (`from devstack.emulators.fal import FalEmulator`): this package imports
nothing itself, so `python -m devstack.emulators.fal` does not load its module twice.
"""
