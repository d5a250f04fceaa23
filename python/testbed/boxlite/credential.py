"""``Credential``: the abstract credential type of REST runtimes (kept for API parity)."""

from abc import ABC, abstractmethod

from ._types import ApiKeyCredential


class Credential(ABC):
    """Something that yields a bearer token for a REST runtime."""

    @abstractmethod
    def get_token(self):
        """Return the token (or an ``AccessToken``)."""


Credential.register(ApiKeyCredential)
