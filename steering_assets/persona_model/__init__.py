"""The persona model as an asset: a pretrained model materialised once into a cached safetensors folder."""
