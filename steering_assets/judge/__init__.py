"""The judge, shared by rollout scoring, vetting and the steering evaluation.

An OpenAI-compatible server's top_logprobs (``openai_judge``), a local causal LM's next-token
logprobs (``local``) and the likelihood-ratio judge of the offline demo (``likelihood``), all
behind one request type and one judgment cache (``judgments``).
"""
