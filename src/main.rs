//! The `uringest` command line. The only place that prints and picks exit
//! codes: 0 success, 2 for anything wrong with the operator's input.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// MPEG-TS ingest node for Linux.
#[derive(Parser, Debug)]
#[command(name = "uringest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read an input to its end (or for --duration) and summarise it:
    /// programs, streams, per-PID packets, bitrate, errors.
    Probe {
        /// A file path, file:///abs/path.ts, or udp://group:port?options.
        url: String,
        /// Files: stop after this much stream time (timed by PCR). Live
        /// inputs: listen this long (default 5 s).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        duration: Option<f64>,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// I/O backend for live inputs: auto, uring or epoll.
        #[arg(long, value_name = "BACKEND", default_value = "auto")]
        io: uringest::shard::IoChoice,
    },
    /// Relay one input to any number of outputs (udp://, a file, - for
    /// stdout) until --duration, the input's end, or Ctrl-C.
    Relay {
        /// The input: a file path, file:///abs/path.ts?options, or
        /// udp://group:port?options.
        input: String,
        /// Outputs: udp://host:port?ttl=&iface=&pkt_size=&start=, a file path
        /// or file:///path.ts?segment=SECS&start=, or - for stdout.
        #[arg(required = true)]
        outputs: Vec<String>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        duration: Option<f64>,
        /// I/O backend: auto, uring or epoll.
        #[arg(long, value_name = "BACKEND", default_value = "auto")]
        io: uringest::shard::IoChoice,
        /// Shards (threads, pinned); default: one per core the process may use.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: Option<u32>,
        /// Print one JSON report at the end (on stderr when an output is -).
        #[arg(long)]
        json: bool,
    },
    /// Run the node: the streams of a config file, or without one the
    /// embedded demo stream (a looped clip paced in real time) at
    /// http://127.0.0.1:8080/streams/demo.ts. HTTP-TS, the JSON API under
    /// /api/v1, /metrics and /healthz are served on the listen address.
    Serve {
        /// The TOML config (see examples/serve.toml); without: the demo.
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// HTTP listen address (overrides the config; default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// I/O backend: auto, uring or epoll (overrides the config).
        #[arg(long, value_name = "BACKEND")]
        io: Option<uringest::shard::IoChoice>,
        /// Shards (threads, pinned; overrides the config); default: one per
        /// core the process may use.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: Option<u32>,
    },
    /// Benchmark tools.
    // Without a subcommand: a one-line error, not the help on stderr.
    #[command(subcommand_required = true, arg_required_else_help = false)]
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Send valid MPEG-TS (one PID, continuity counters unbroken) over UDP,
    /// evenly paced at --rate (UDP payload bits/s), for --duration.
    Send {
        /// Destination: udp://host:port, udp://[v6]:port, or a multicast
        /// group with ?iface= for the outgoing interface.
        url: String,
        /// UDP payload bits per second: 3G, 500M, 1.5G, 100k, 3000000, or
        /// max (as fast as possible).
        #[arg(long, value_name = "BITS_PER_SEC", value_parser = parse_rate)]
        rate: uringest::bench::rate::Rate,
        /// Seconds to send (fractions allowed, at most a day).
        #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// UDP payload bytes per datagram: a multiple of 188.
        #[arg(long, value_name = "BYTES", default_value_t = uringest::bench::send::DEFAULT_DATAGRAM_BYTES,
              value_parser = parse_pkt)]
        pkt: usize,
        /// Let the kernel cut each send into datagrams (UDP GSO, UDP_SEGMENT).
        #[arg(long)]
        gso: bool,
        /// Pin the sending thread to this CPU core.
        #[arg(long, value_name = "N")]
        core: Option<usize>,
        /// TTL (hop limit); multicast defaults to 1.
        #[arg(long, value_name = "HOPS", value_parser = clap::value_parser!(u32).range(1..=255))]
        ttl: Option<u32>,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Receive a udp:// input on one shard and drop what arrives: the
    /// receive path alone, for perf/udp.sh. Prints the input's counters.
    Recv {
        /// udp://group:port?options, as for probe.
        url: String,
        /// Seconds to listen.
        #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
        duration: f64,
        /// I/O backend: auto, uring or epoll.
        #[arg(long, value_name = "BACKEND", default_value = "auto")]
        io: uringest::shard::IoChoice,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Play files looped and paced by PCR, many at once, and report the CPU
    /// they cost and how late emissions are against their PCR time.
    Pace {
        /// Transport-stream files, used in turn by the streams.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Streams to play at once.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        streams: u32,
        /// Seconds to play.
        #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
        duration: f64,
        /// Shards (threads, one per core by default).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: Option<u32>,
        /// I/O backend: auto, uring or epoll.
        #[arg(long, value_name = "BACKEND", default_value = "auto")]
        io: uringest::shard::IoChoice,
        /// Shortest time between two wake-ups of a stream, in microseconds.
        #[arg(long, value_name = "US", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        quantum_us: u64,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

/// Cores available to this process: the default shard count.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Prints `value` as JSON or as text, and the exit code for that. A closed
/// pipe (`uringest probe … | head`) is not an error.
fn print_report<T: serde::Serialize>(value: &T, json: bool, text: impl FnOnce(&T) -> String) -> ExitCode {
    let out = if json {
        match serde_json::to_string_pretty(value) {
            Ok(out) => out + "\n",
            Err(e) => {
                eprintln!("uringest: cannot encode report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        text(value)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("uringest: cannot write the report: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn parse_rate(s: &str) -> Result<uringest::bench::rate::Rate, String> {
    s.parse().map_err(|e: uringest::bench::rate::RateError| e.to_string())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    uringest::bench::rate::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_pkt(s: &str) -> Result<usize, String> {
    let bad = || format!("'{s}' is not a positive multiple of 188 up to 65424 (e.g. 1316 = 7 x 188)");
    let n = s.parse::<usize>().map_err(|_| bad())?;
    uringest::bench::send::check_datagram_bytes(n).map_err(|_| bad())
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    // Warnings (a clamped receive buffer, a missing io_uring) go to stderr;
    // URINGEST_LOG=info (or debug) shows more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("URINGEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message runs over several lines; keep its first
            // paragraph (the problem and the argument named) on one line.
            let rendered = e.render().to_string();
            let problem: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim().trim_start_matches("error: "))
                .collect();
            eprintln!("uringest: {} (see uringest --help)", problem.join(" "));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Probe { url, duration, json, io } => {
            match uringest::probe::probe(&url, uringest::probe::ProbeOptions { duration_secs: duration, io }) {
                Ok(report) => print_report(&report, json, uringest::probe::render_text),
                Err(e) => {
                    eprintln!("uringest: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { config, listen, io, shards } => serve(config, listen, io, shards),
        Command::Relay { input, outputs, duration, io, shards, json } => {
            relay(&input, &outputs, duration, io, shards, json)
        }
        Command::Bench { command: BenchCommand::Send { url, rate, duration, pkt, gso, core, ttl, json } } => {
            bench_send(&url, rate, duration, pkt, gso, core, ttl, json)
        }
        Command::Bench { command: BenchCommand::Recv { url, duration, io, json } } => {
            match uringest::bench::recv::run(&url, std::time::Duration::from_secs_f64(duration), io) {
                Ok(report) => print_report(&report, json, uringest::bench::recv::render_text),
                Err(e) => {
                    eprintln!("uringest: bench recv: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench { command: BenchCommand::Pace { files, streams, duration, shards, io, quantum_us, json } } => {
            let options = uringest::bench::pace::PaceBenchOptions {
                files,
                streams: streams as usize,
                duration: std::time::Duration::from_secs_f64(duration),
                shards: shards.map_or_else(cores, |n| n as usize),
                io,
                quantum: std::time::Duration::from_micros(quantum_us),
            };
            match uringest::bench::pace::run(&options) {
                Ok(report) => print_report(&report, json, uringest::bench::pace::render_text),
                Err(e) => {
                    eprintln!("uringest: bench pace: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Stop flag set by SIGINT/SIGTERM; a second signal exits at once. When
/// the handlers cannot be installed, says so and gives the exit code.
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)));
        if let Err(e) = registered {
            eprintln!("uringest: cannot handle signals: {e}");
            return Err(ExitCode::FAILURE);
        }
    }
    Ok(stop)
}

/// `uringest serve`: runs until SIGINT/SIGTERM. Exit codes: 0 after a
/// signal, 2 for a refused config, 1 for anything else.
fn serve(
    config: Option<std::path::PathBuf>,
    listen: Option<std::net::SocketAddr>,
    io: Option<uringest::shard::IoChoice>,
    shards: Option<u32>,
) -> ExitCode {
    let stop = match stop_on_signals() {
        Ok(stop) => stop,
        Err(code) => return code,
    };
    let options = uringest::serve::ServeOptions { config, listen, io, shards: shards.map(|n| n as usize) };
    let listening = |addr, ids: &[String]| {
        for id in ids {
            eprintln!("uringest: serving http://{addr}/streams/{id}.ts");
        }
        eprintln!("uringest: API at http://{addr}/api/v1/streams, metrics at /metrics (Ctrl-C stops)");
    };
    match uringest::serve::serve(&options, stop, listening) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ uringest::serve::ServeError::Config(_)) => {
            eprintln!("uringest: serve: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("uringest: serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `uringest relay`: runs until the end, then reports. Exit codes: 0 for
/// any clean end, 2 for a bad URL or option, 1 for a failure at run time.
fn relay(
    input: &str,
    outputs: &[String],
    duration: Option<f64>,
    io: uringest::shard::IoChoice,
    shards: Option<u32>,
    json: bool,
) -> ExitCode {
    let stop = match stop_on_signals() {
        Ok(stop) => stop,
        Err(code) => return code,
    };
    let options = uringest::relay::RelayOptions {
        duration: duration.map(std::time::Duration::from_secs_f64),
        io,
        shards: shards.map(|n| n as usize),
        status: !json,
    };
    match uringest::relay::relay(input, outputs, &options, stop) {
        Ok(report) => {
            let to_stdout = !outputs.iter().any(|o| o == "-");
            let text = if json {
                serde_json::to_string_pretty(&report).map(|s| s + "\n").unwrap_or_default()
            } else {
                uringest::relay::render_text(&report)
            };
            if to_stdout && json {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
            } else {
                eprint!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("uringest: relay: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_send(
    url: &str,
    rate: uringest::bench::rate::Rate,
    duration: std::time::Duration,
    pkt: usize,
    gso: bool,
    core: Option<usize>,
    ttl: Option<u32>,
    json: bool,
) -> ExitCode {
    use uringest::bench::{send, socket};
    let result = socket::parse_destination(url).and_then(|dest| {
        let options = send::SendOptions { dest, rate, duration, datagram_bytes: pkt, gso, ttl, core };
        send::run(&options, &uringest::clock::SystemClock)
    });
    match result {
        Ok(report) => print_report(&report, json, send::render_text),
        Err(e) => {
            eprintln!("uringest: {e}");
            ExitCode::from(2)
        }
    }
}
