"""The `mimic-bench` command line."""
import click


@click.group()
def main():
    """mimic-bench: reproduce and benchmark MIMIC-MJX."""
