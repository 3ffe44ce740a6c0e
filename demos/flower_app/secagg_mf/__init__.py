"""secagg_mf: matrix factorization over Flower with secagg's secure aggregation."""
