"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class FFVisionError(Exception):
    """Base class for errors caused by user input, not by a bug."""

    exit_code = 2


class ConfigError(FFVisionError, ValueError):
    """A bad option: unknown key, wrong type, out-of-range value, unknown name."""


class ImageTooSmall(ConfigError):
    """Images smaller than a model (or a label set) can take; `minimum` is the smallest size that works."""

    def __init__(self, message: str, minimum: int) -> None:
        super().__init__(message)
        self.minimum = minimum


class DataError(FFVisionError):
    """A dataset that is missing, incomplete, corrupted or inconsistent."""


class CheckpointError(FFVisionError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


class StorageError(FFVisionError):
    """A run file could not be written (a full, read-only or unwritable disk); every earlier file is intact.

    Exit status 74, sysexits.h's EX_IOERR: a scheduler can tell a storage fault (requeue once there is space)
    from a bad option (2).
    """

    exit_code = 74


class TrainingDiverged(FFVisionError):
    """The loss became NaN or infinite; training stopped and the best checkpoint was kept."""

    exit_code = 3


def unknown_name(kind: str, name: str, choices: list[str]) -> ConfigError:
    """Build the error for an unknown registry name, listing the valid choices."""
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(choices))}")


class TrainingInterrupted(FFVisionError):
    """Ctrl-C, SIGTERM, SIGUSR1 or a stop request: last.pt was saved and the run can be resumed.

    The exit status is 128 + the signal's number, as a shell reports a process the signal ended: 130 after
    Ctrl-C (SIGINT) or a stop request, 143 after SIGTERM, 138 after SIGUSR1 (on Linux).
    """

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code
