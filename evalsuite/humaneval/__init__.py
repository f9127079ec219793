"""Human evaluation: blind pair bundles, the rater web form, and the aggregation of votes."""
