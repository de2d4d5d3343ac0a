"""``movierec stream``: a dev broker, the consumer, and producers (replay or simulated users)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from movierec.cli.console import EXIT_REJECT_RATE, errors, fail, say, table, write_json
from movierec.cli.options import DataDirOpt
from movierec.settings import get_settings

stream_app = typer.Typer(help="Event stream: broker, consumer, producer.", no_args_is_help=True)

TopicOpt = Annotated[str | None, typer.Option(help="Topic (default MOVIEREC_KAFKA_TOPIC).")]
BootstrapOpt = Annotated[
    str | None, typer.Option(help="Kafka bootstrap servers (default MOVIEREC_KAFKA_BOOTSTRAP).")
]


@stream_app.command("broker")
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9092,
    topic: TopicOpt = None,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the topic.")] = 2,
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    advertised: Annotated[
        str | None,
        typer.Option(help="Host name clients are told to connect to (default: the interface)."),
    ] = None,
) -> None:
    """Run a Tansu broker (Kafka protocol, in memory) until interrupted (127.0.0.1 by default)."""
    from movierec.streams.broker import Broker, create_topic

    with errors(), Broker(port, host=host, advertised=advertised) as b:
        name = topic or get_settings().kafka_topic
        create_topic(b.bootstrap, name, partitions)
        say(f"broker on {b.bootstrap}, topic {name} ({partitions} partitions); Ctrl-C stops it")
        try:
            while b.process is not None and b.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@stream_app.command("consume")
def consume(
    topic: TopicOpt = None,
    group: Annotated[str | None, typer.Option(help="Consumer group.")] = None,
    bootstrap: BootstrapOpt = None,
    dataset: Annotated[
        str | None, typer.Option(help="Release or folder whose movies resolve title slugs.")
    ] = None,
    data_dir: DataDirOpt = None,
    batch: Annotated[
        int | None, typer.Option(min=1, help="Messages per batch (default 50,000).")
    ] = None,
    max_reject_rate: Annotated[
        float | None, typer.Option(help="Stop (exit 3, batch not committed) above this share.")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Append rejects (partition, offset, reason) as JSONL.")
    ] = None,
    max_events: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without events.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics (lag, events/s, rejects) on this port.")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the final counts as JSON.")] = None,
) -> None:
    """Consume the event stream: validate, store durably, then commit (at-least-once)."""
    from movierec.data.events import slug_index
    from movierec.data.feedback import FeedbackStore
    from movierec.data.tables import load_tables
    from movierec.streams.consumer import BATCH, RejectRateExceededError, StreamConsumer
    from movierec.streams.metrics import StreamMetrics

    s = get_settings()
    with errors():
        slugs = None
        if dataset is not None:
            tables = load_tables(dataset, s, data_dir, kinds=("movies",))
            slugs = slug_index(tables.movies) if tables.movies is not None else None
        store = FeedbackStore.for_settings(s.home, s.reveal(s.database_url), overlay=False)
        metrics = StreamMetrics()
        if metrics_port is not None:
            metrics.serve(metrics_port)
        consumer = StreamConsumer(
            store,
            bootstrap=bootstrap or s.kafka_bootstrap,
            topic=topic or s.kafka_topic,
            group=group or s.kafka_group,
            slugs=slugs,
            batch_size=batch or BATCH,
            max_reject_rate=max_reject_rate,
            reject_file=rejects,
            metrics=metrics,
        )
        stop = threading.Event()
        last = [0.0]

        def line(stats: object) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0:
                last[0] = now
                c = consumer.stats
                lag = sum(c.lag.values())
                say(
                    f"events {c.events:,} · {c.events_per_s:,.0f}/s · rejects {c.rejects:,} · "
                    f"stored {c.feedback_new:,} feedback, {c.served_new:,} served · lag {lag:,}"
                )

        try:
            stats = consumer.run(stop, max_events=max_events, idle_exit_s=idle_exit, on_batch=line)
        except RejectRateExceededError as e:
            raise fail(e, EXIT_REJECT_RATE) from None
        except KeyboardInterrupt:
            stats = consumer.stats
        finally:
            store.close()
    result = stats.to_dict()
    table(
        "stream consumer",
        ("events", "rejects", "feedback stored", "served stored", "events/s"),
        [
            (
                f"{stats.events:,}",
                f"{stats.rejects:,}",
                f"{stats.feedback_new:,}",
                f"{stats.served_new:,}",
                f"{stats.events_per_s:,.0f}",
            )
        ],
    )
    write_json(output, result)


@stream_app.command("produce")
def produce(
    topic: TopicOpt = None,
    bootstrap: BootstrapOpt = None,
    file: Annotated[Path | None, typer.Option(help="Replay this event-log file.")] = None,
    simulate: Annotated[
        bool, typer.Option(help="Simulated users asking the running API (see --api).")
    ] = False,
    api: Annotated[
        str, typer.Option(help="API base URL for --simulate.")
    ] = "http://127.0.0.1:8000",
    dataset: Annotated[
        str, typer.Option(help="Release whose held-out behaviour drives simulated users.")
    ] = "ml-latest-small",
    data_dir: DataDirOpt = None,
    rate: Annotated[float | None, typer.Option(help="Lines (replay) per second at most.")] = None,
    duration: Annotated[float, typer.Option(help="Seconds of simulation.")] = 60.0,
    requests: Annotated[int | None, typer.Option(help="Simulated requests at most.")] = None,
    limit: Annotated[int | None, typer.Option(help="Replay at most this many lines.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 0,
    output: Annotated[Path | None, typer.Option(help="Write the counts as JSON.")] = None,
) -> None:
    """Replay an event-log file, or simulate users (request, watch, rate) against the API."""
    from movierec.streams.producer import (
        LineProducer,
        Population,
        SimConfig,
        http_asker,
        replay,
    )
    from movierec.streams.producer import simulate as run_simulation

    s = get_settings()
    if (file is None) == (not simulate):
        raise typer.BadParameter("give --file FILE or --simulate (one of them)")
    with errors():
        producer = LineProducer(bootstrap or s.kafka_bootstrap, topic or s.kafka_topic, rate)
        if file is not None:
            if not file.is_file():
                raise FileNotFoundError(f"no such file: {file}")
            sent = replay(file, producer, limit=limit)
            say(f"sent {sent:,} lines to {producer.topic}")
            write_json(output, {"sent": sent, "failed": producer.failed})
            return
        from movierec.data.tables import load_tables

        tables = load_tables(dataset, s, data_dir)
        r = tables.ratings
        pop = Population.from_ratings(
            r["user_id"].to_numpy(),
            r["movie_id"].to_numpy(),
            r["rating"].to_numpy(),
            r["timestamp"].to_numpy(),
        )
        ask = http_asker(api, 10, s.reveal(s.api_key))
        stats = run_simulation(
            pop,
            ask,
            producer.send,
            config=SimConfig(seed=seed),
            duration_s=duration,
            max_requests=requests,
        )
        left = producer.flush()
    say(
        f"{stats.requests:,} requests, {stats.watched:,} watched "
        f"({stats.watched_in_future:,} in the held-out future), {stats.rated:,} rated, "
        f"{stats.lines:,} lines; undelivered {left}"
    )
    write_json(output, stats.__dict__)
