"""Hugging Face interoperability: weights converted to and from transformers' layouts (`weights`), the
families they belong to (`families`), and whole model + tokenizer folders in and out (`folder`: ``cleangpt
export`` / ``import``)."""

from cleangpt_core.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HFFamily": ".families",
        "FAMILIES": ".families",
        "family_for_architecture": ".families",
        "family_for_model_type": ".families",
        "export_hf": ".folder",
        "import_hf": ".folder",
    },
)
