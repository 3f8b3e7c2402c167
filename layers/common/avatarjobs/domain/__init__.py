"""Domain logic: request models, the job record, the state machine and the use cases. No Lambda events here."""
