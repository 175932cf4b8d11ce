"""Delivery: runs, scheduling and sending as DBOS durable workflows and queues (in-process by default; worker
processes sharing PostgreSQL for scale-out)."""
