"""Who is calling: the owner of a job is the id of the API key that API Gateway checked."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from avatarjobs.http.problems import MissingCaller


def caller(app: APIGatewayRestResolver) -> str:
    api_key_id = app.current_event.request_context.identity.api_key_id
    if not api_key_id:
        raise MissingCaller()
    return api_key_id
