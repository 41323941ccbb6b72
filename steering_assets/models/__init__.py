"""The model layer every stage uses: loading (Hugging Face folders and GGUF files), forward
hooks on decoder blocks, the residual stream, assistant-token masks, batched generation
backends, the sentence encoder and sparse autoencoders. Plain Python over the core layer.
"""
