"""The online models' names, without loading river (``--help`` lists them; the factories are in
:data:`streamfuse.learn.models.MODELS`, kept equal to this by tests/test_cli_help.py)."""

MODEL_NAMES: tuple[str, ...] = (
    "logreg", "river-logreg", "softmax", "lda", "hoeffding", "neurofuzzy"
)
