"""The one place where logger, tracer and metrics are made; every module imports them from here."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
