"""Metric functions: per-token loss and perplexity (`ppl`), bootstrap statistics (`stats`)."""
