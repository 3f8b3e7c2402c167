"""The local stack: the whole pipeline on one machine, on moto and provider emulators."""
