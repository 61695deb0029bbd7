"""The one error a bad search file produces."""


class SpecError(ValueError):
    """A search file that cannot run: names the file, the field and what was expected.

    ``str(error)`` is the one line the CLI prints before exiting with status 2.
    """

    def __init__(self, file: str, field: str, message: str):
        self.file, self.field, self.message = file, field, message
        super().__init__(f"{file}: {field}: {message}" if field else f"{file}: {message}")
