"""The one error the classifier package raises: a model that cannot be loaded or used, said in one line."""


class ClassifierError(RuntimeError):
    pass
