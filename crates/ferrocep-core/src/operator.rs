//! The keyed CEP operator (Flink `CepOperator`): placeholder, being written.
