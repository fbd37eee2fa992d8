"""Domain errors. Adapters turn SDK exceptions into these; the CLI and pages show their message."""


class BillingError(Exception):
    """Base of every error the product reports to a user as one clear line."""


class NotFound(BillingError):
    """The thing does not exist, or belongs to another league (which looks the same)."""


class PermissionDenied(BillingError):
    """The acting user's role or scope does not allow this."""


class InvalidInput(BillingError):
    """Input that the product refuses, with the reason."""


class PaymentProviderError(BillingError):
    """Stripe refused or failed a request.

    ``changed_nothing`` is True only when Stripe answered that the request itself was refused
    (a 4xx other than a conflict, a rate limit or an idempotency mismatch), so it is certain
    nothing was created; after a lost answer or a server error nobody can tell.
    """

    def __init__(self, message: str, *, request_id: str | None = None, retryable: bool = False,
                 changed_nothing: bool = False, http_status: int | None = None):
        super().__init__(message if request_id is None else f"{message} (Stripe request {request_id})")
        self.request_id = request_id
        self.retryable = retryable
        self.changed_nothing = changed_nothing
        self.http_status = http_status


class EmailDeliveryError(BillingError):
    """The email provider refused or failed a message."""

    def __init__(self, message: str, *, retryable: bool = False, quota_exhausted: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.quota_exhausted = quota_exhausted
