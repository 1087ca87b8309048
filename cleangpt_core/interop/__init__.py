"""Hugging Face interoperability: whole model + tokenizer folders in and out (``cleangpt export`` / ``import``)."""

from cleangpt_core.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HFFamily": ".families",
        "FAMILIES": ".families",
        "family_for_architecture": ".families",
        "family_for_model_type": ".families",
        "export_hf": ".hf_folder",
        "import_hf": ".hf_folder",
    },
)
