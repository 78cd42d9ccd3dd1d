//! Sampling: temperature, top-k and top-p filtering, greedy decoding, next-token
//! probability tables and scoring, over a model's KV-cache inference path.
