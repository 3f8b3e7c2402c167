"""avatarjobs: the shared package of the avatarjobs Lambda functions (domain and AWS adapters)."""
