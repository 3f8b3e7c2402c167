"""Generation providers as plugins: each module here implements the domain's Provider port (domain/ports.py) for
one provider and exposes `plugin(config, keys)`, which builds it as configured. The registry below is the only
list of them: composition builds a job's provider from it by the job's `provider` name, and importing a provider
is paid only by a function that handles its jobs (cold start).
"""

from collections.abc import Callable

# A provider's API key, or what reads it the first time a call needs it: checking a webhook's signature or token
# needs no key, so no key is fetched for one (docs/decisions.md, "Webhooks: signature or token before any key").
type ApiKey = str | Callable[[], str]
# (the variable that may hold the key directly, the ARN of its secret) -> the key, read when first needed.
type KeySource = Callable[[str, str | None], ApiKey]

# Provider name (a job's `provider`, the webhook path's segment) -> the module whose `plugin` builds it.
PLUGINS: dict[str, str] = {
    "fal": "avatarjobs.providers.fal",
    "mirako": "avatarjobs.providers.mirako",
}


def key_reader(api_key: ApiKey) -> Callable[[], str]:
    return api_key if callable(api_key) else lambda: api_key
