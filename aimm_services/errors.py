"""Exception classes of the model manager.

Every class takes its message as the only positional argument, so speedysvc can re-create
it on the client side with its type intact (it rebuilds remote exceptions from simple args).
"""


class AimmError(Exception):
    """Base class of every error the model manager raises itself."""


class ConfigError(AimmError):
    """The AIMM YAML configuration is missing, unreadable or invalid (all problems listed)."""


class PluginError(AimmError):
    """Base class of plugin registration and lookup problems."""


class DuplicatePluginError(PluginError, ValueError):
    """The same plugin key was registered twice from two different places."""


class PluginLoadError(PluginError, ImportError):
    """A plugin module named in the configuration could not be imported."""


class UnknownModelType(PluginError, KeyError):
    """No plugin of the needed kind is registered for this model type."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownDataAccess(PluginError, KeyError):
    """No data access plugin is registered under this name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PluginContractError(PluginError):
    """A plugin returned something that breaks its contract (e.g. fit returned None)."""


class UnknownModel(AimmError, KeyError):
    """No model with this instance id exists (it never did, or it was removed)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownAction(AimmError, KeyError):
    """No action with this id is known to the engine."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidInstance(AimmError, ValueError):
    """Serialized instance bytes could not be deserialized by the model type's plugin."""


class WireFormatError(AimmError, TypeError):
    """A value cannot be represented on the wire (JSON or msgpack representation)."""


class ActionError(AimmError):
    """Base class of errors about an action's outcome, raised by the client."""


class ActionFailed(ActionError):
    """The action's plugin raised; carries the remote error type, message and traceback."""

    def __init__(self, message: str, error_type: str = "", remote_traceback: str = ""):
        super().__init__(message)
        self.error_type = error_type
        self.remote_traceback = remote_traceback


class ActionCancelled(ActionError):
    """The action was cancelled before it produced a result."""


class ActionTimeout(ActionError, TimeoutError):
    """The action ran longer than its per-action timeout and was stopped."""


class ActionNotFinished(ActionError, TimeoutError):
    """Waiting for an action's result ran out of time; the action is still queued or running."""


class ActionResultUnavailable(ActionError):
    """The action finished but its result is no longer kept (history limit reached)."""


class AuthError(AimmError):
    """Base class of login problems."""


class NotLoggedIn(AuthError, PermissionError):
    """The call needs a logged-in session: call login(username, password) first."""


class LoginFailed(AuthError, PermissionError):
    """Wrong username or password."""


class LoginRateLimited(AuthError, PermissionError):
    """Too many failed logins for this user; wait before trying again."""


class HatNotActive(AimmError, RuntimeError):
    """This AIMM server is not the active one of its Hat group (standby, or waiting for the
    Hat monitor or event server): another server of the group serves, or none yet."""
