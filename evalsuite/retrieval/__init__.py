"""Long-context retrieval samples: generators (passkey, niah, variable_tracking, book_facts) that build a `Problem`
from a seed, haystacks (filler or a corpus), the layout of a problem in a model's tokens (`prompt`), and a reader that
scores candidate answers and generates one from a single pass over the prompt (`reader`). The task kinds are in
`evalsuite.kinds.retrieval`, the scoring in `evalsuite.metrics.retrieval`."""
