-- MLflow's own database beside movierec's (POSTGRES_DB); run once by the postgres image.
CREATE DATABASE mlflow OWNER movierec;
