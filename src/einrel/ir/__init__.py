"""The intermediate representations above blocks: the scalar expression language of joins
(`scalar`), the extended einsum (`einsum`), the whole-tensor dataflow graph (`graph`) and the
graph pass that folds elementwise einsums into their consumers (`fuse`)."""
