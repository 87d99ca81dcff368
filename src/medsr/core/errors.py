"""The one exception type a user should see: a one-line message naming the file or key at fault."""


class MedsrError(Exception):
    """A problem with the user's input (parameters, data, files); the CLI prints it on one line."""
