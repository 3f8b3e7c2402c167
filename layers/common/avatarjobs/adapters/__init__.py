"""AWS adapters: small classes that implement the domain's ports with boto3."""
