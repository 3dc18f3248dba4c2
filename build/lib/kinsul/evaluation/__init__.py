"""Evaluation: closed-loop rollouts and policies, language following, VLM probe accuracy and knowledge retention,
chunk latency, the success-against-steps callback, and `kinsul eval`."""
