"""Provider API keys: FAL_KEY / MIRAKO_API_KEY when set, else Secrets Manager through Powertools (cached)."""

import os

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from avatarjobs.domain.providers import FailureKind, ProviderError, ProviderErrorCode

_SECRET_MAX_AGE_SECONDS = 300  # a rotated key is picked up within five minutes


def provider_key(direct_variable: str, secret_arn: str | None) -> str:
    direct = os.environ.get(direct_variable)
    if direct:
        return direct
    if not secret_arn:
        raise ProviderError(
            ProviderErrorCode.AUTH_FAILED,
            f"no API key is configured for this provider ({direct_variable} or its secret ARN)",
            kind=FailureKind.FINAL,
        )
    try:
        return str(parameters.get_secret(secret_arn, max_age=_SECRET_MAX_AGE_SECONDS))
    except GetParameterError:
        # Read when a call first needs it, so nothing has been sent yet: the call may be made again later.
        raise ProviderError(
            ProviderErrorCode.UNREACHABLE,
            f"the API key for {direct_variable} could not be read from Secrets Manager",
            kind=FailureKind.RETRY,
        ) from None
