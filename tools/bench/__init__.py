"""`anomalybert bench`: a bundle and running servers in, throughput, latency, Redis memory and int8 accuracy out."""
