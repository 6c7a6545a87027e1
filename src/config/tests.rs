use std::os::unix::fs::symlink;
use std::path::PathBuf;

use super::*;
use crate::output::spec::UdpOutSpec;
use crate::url::Pace;

/// The error for `text`, checked to be one line naming the file; returns
/// its line and problem.
fn refused(text: &str) -> (usize, String) {
    let err = parse(text, "t.toml").expect_err("config accepted");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
    let Some(line) = err.line() else { panic!("no line in {msg}") };
    assert!(msg.starts_with(&format!("config t.toml:{line}: ")), "{msg}");
    let ConfigError::Invalid { problem, .. } = err else { unreachable!() };
    (line, problem)
}

/// A temp dir with `media/` (holding `a.ts` and `sub/b.ts`) and `outside/`
/// (holding `secret.ts`), and a `[node.mounts]` line for `media`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("media/sub")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("media/a.ts"), b"x").unwrap();
        std::fs::write(dir.path().join("media/sub/b.ts"), b"x").unwrap();
        std::fs::write(dir.path().join("outside/secret.ts"), b"x").unwrap();
        Tree { dir }
    }
    fn media(&self) -> PathBuf {
        self.dir.path().join("media").canonicalize().unwrap()
    }
    fn mounts(&self) -> Mounts {
        let mut m = Mounts::new();
        m.insert("media", &self.media()).unwrap();
        m
    }
    fn node(&self) -> String {
        format!("[node.mounts]\nmedia = '{}'\n", self.media().display())
    }
}

#[test]
fn empty_text_gives_the_safe_defaults() {
    let c = parse("", "t.toml").unwrap();
    assert_eq!(c.node.listen, DEFAULT_LISTEN.parse::<SocketAddr>().unwrap());
    assert!(c.node.listen.ip().is_loopback());
    assert_eq!((c.node.shards, c.node.io, c.node.token.clone()), (None, IoChoice::Auto, None));
    assert!(c.node.mounts.is_empty() && c.streams.is_empty());
}

#[test]
fn a_full_stream_parses_with_defaults_and_overrides() {
    let text = "[node]\nlisten = '0.0.0.0:9000'\nshards = 3\nio = 'epoll'\ntoken = 'abcdefghijklmnop'\n\
                [[stream]]\nid = 'news'\ninputs = ['udp://239.1.1.1:5000']\noutputs = ['udp://239.2.2.2:5000?ttl=4', '-']\n\
                [[stream]]\nid = 'b-2'\ninputs = ['udp://239.1.1.2:5000']\ninput_timeout = 1\nfailback_after = 0.5\n";
    let c = parse(text, "t.toml").unwrap();
    assert_eq!(c.node.listen, "0.0.0.0:9000".parse::<SocketAddr>().unwrap());
    assert_eq!((c.node.shards, c.node.io), (Some(3), IoChoice::Epoll));
    assert_eq!(c.node.token.as_ref().unwrap().as_str(), "abcdefghijklmnop");
    assert_eq!(format!("{:?}", c.node.token), "Some(ApiToken(***))");
    assert_eq!(c.streams.len(), 2);
    let news = &c.streams[0];
    assert_eq!(news.id, "news");
    assert_eq!(news.inputs, vec![parse_input("udp://239.1.1.1:5000").unwrap()]);
    let OutputSpec::Udp(UdpOutSpec { ttl, .. }) = &news.outputs[0] else { panic!() };
    assert_eq!((*ttl, &news.outputs[1]), (Some(4), &OutputSpec::Stdout));
    assert_eq!((news.input_timeout, news.failback_after), (DEFAULT_INPUT_TIMEOUT, DEFAULT_FAILBACK_AFTER));
    let b = &c.streams[1];
    assert_eq!((b.input_timeout, b.failback_after), (Duration::from_secs(1), Duration::from_millis(500)));
    assert!(b.outputs.is_empty());
}

#[test]
fn unknown_keys_are_refused_by_name_at_their_line() {
    let (line, p) = refused("[node]\nlisten = '127.0.0.1:1'\nshard = 2\n");
    assert_eq!(line, 3);
    assert!(p.contains("unknown field `shard`"), "{p}");
    let (line, p) = refused("[[stream]]\nid = 'a'\ninputs = ['udp://239.1.1.1:5000']\n\ninput_timout = 2\n");
    assert_eq!(line, 5);
    assert!(p.contains("`input_timout`"), "{p}");
    let (line, p) = refused("\n[nodes]\nx = 1\n");
    assert_eq!(line, 2);
    assert!(p.contains("`nodes`"), "{p}");
}

#[test]
fn toml_syntax_and_type_errors_carry_their_line() {
    assert_eq!(refused("[node]\n\nlisten = \n").0, 3);
    let (line, p) = refused("[node]\nshards = 'two'\n");
    assert_eq!(line, 2);
    assert_eq!(p, "invalid type: string \"two\", expected i64");
}

#[test]
fn node_values_are_checked_at_their_line() {
    let (line, p) = refused("[node]\nio = 'auto'\nlisten = 'localhost:80'\n");
    assert_eq!(line, 3);
    assert!(p.starts_with("bad listen address 'localhost:80'"), "{p}");
    assert_eq!(refused("[node]\nshards = 0\n"), (2, format!("shards = 0: expected 1..={MAX_SHARDS}")));
    assert_eq!(refused("[node]\nshards = -1\n").0, 2);
    assert_eq!(refused("[node]\n\nshards = 1025\n").0, 3);
    let (line, p) = refused("[node]\nio = 'kqueue'\n");
    assert_eq!(line, 2);
    assert!(p.contains("unknown I/O backend 'kqueue'"), "{p}");
}

#[test]
fn tokens_are_bounded_and_never_echoed() {
    let (line, p) = refused("[node]\ntoken = 'short-secret'\n");
    assert_eq!((line, p.as_str()), (2, "token: 12 characters, expected 16 to 256"));
    let (line, p) = refused("[node]\n\ntoken = 'with a space in the secret'\n");
    assert_eq!(line, 3);
    assert!(!p.contains("secret"), "{p}");
    assert_eq!(refused(&format!("[node]\ntoken = '{}'\n", "x".repeat(257))).0, 2);
}

#[test]
fn mounts_must_be_existing_absolute_directories() {
    let t = Tree::new();
    let (line, p) = refused("[node.mounts]\nmedia = 'srv/media'\n");
    assert_eq!(line, 2);
    assert_eq!(p, "mount 'media': directory 'srv/media' is not an absolute path");
    let missing = t.dir.path().join("nope");
    let (line, p) = refused(&format!("[node.mounts]\na = '{}'\nb = '{}'\n", t.media().display(), missing.display()));
    assert_eq!(line, 3);
    assert!(p.ends_with("does not exist"), "{p}");
    let file = t.media().join("a.ts");
    let (line, p) = refused(&format!("[node.mounts]\nf = '{}'\n", file.display()));
    assert_eq!(line, 2);
    assert!(p.ends_with("not a directory"), "{p}");
    let (line, p) = refused(&format!("[node.mounts]\nMedia = '{}'\n", t.media().display()));
    assert_eq!(line, 2);
    assert!(p.starts_with("bad mount name 'Media'"), "{p}");
    assert!(refused(&format!("[node.mounts]\nlocalhost = '{}'\n", t.media().display())).1.contains("localhost"));
    let c = parse(&t.node(), "t.toml").unwrap();
    assert_eq!(c.node.mounts.get("media"), Some(t.media().as_path()));
}

#[test]
fn stream_ids_are_checked_and_unique() {
    let s = |id: &str| format!("[[stream]]\nid = '{id}'\ninputs = ['udp://239.1.1.1:5000']\n");
    let (line, p) = refused(&format!("{}{}", s("a"), s("a")));
    assert_eq!((line, p.as_str()), (5, "stream id 'a' already used (line 2)"));
    assert!(refused(&s("News")).1.starts_with("bad stream id 'News'"));
    assert_eq!(refused(&s("")).0, 2);
    assert_eq!(refused(&s(&"a".repeat(65))).0, 2);
    parse(&s(&"a".repeat(64)), "t.toml").unwrap();
    let (line, p) = refused("[[stream]]\ninputs = ['udp://239.1.1.1:5000']\n");
    assert_eq!(line, 1);
    assert!(p.contains("missing field `id`"), "{p}");
}

#[test]
fn input_and_output_counts_are_bounded() {
    let (line, p) = refused("[[stream]]\nid = 'a'\n\ninputs = []\n");
    assert_eq!((line, p.as_str()), (4, "stream 'a' has no inputs"));
    assert!(refused("[[stream]]\nid = 'a'\n").1.contains("missing field `inputs`"));
    let list =
        |n: usize, port0: usize| (0..n).map(|i| format!("  'udp://239.1.1.1:{}',\n", port0 + i)).collect::<String>();
    let text = format!("[[stream]]\nid = 'a'\ninputs = [\n{}]\n", list(MAX_INPUTS + 1, 1000));
    assert_eq!(refused(&text), (4 + MAX_INPUTS, format!("stream 'a' has more than {MAX_INPUTS} inputs")));
    parse(&format!("[[stream]]\nid = 'a'\ninputs = [\n{}]\n", list(MAX_INPUTS, 1000)), "t.toml").unwrap();
    let text = format!("[[stream]]\nid = 'a'\ninputs = ['udp://239.1.1.1:5000']\noutputs = [\n{}]\n", list(65, 1000));
    assert_eq!(refused(&text), (5 + MAX_OUTPUTS, format!("stream 'a' has more than {MAX_OUTPUTS} outputs")));
}

#[test]
fn more_than_max_streams_is_refused_at_the_first_extra() {
    let mut text = String::new();
    for i in 0..=MAX_STREAMS {
        text.push_str(&format!("[[stream]]\nid = 's{i}'\ninputs = ['udp://239.1.1.1:5000']\n"));
    }
    let (line, p) = refused(&text);
    assert_eq!((line, p), (3 * MAX_STREAMS + 1, format!("more than {MAX_STREAMS} streams")));
    let cut: String = text.lines().take(3 * MAX_STREAMS).map(|l| format!("{l}\n")).collect();
    assert_eq!(parse(&cut, "t.toml").unwrap().streams.len(), MAX_STREAMS);
}

#[test]
fn url_errors_name_the_stream_the_input_and_the_line() {
    let text = "[[stream]]\nid = 'a'\ninputs = [\n  'udp://239.1.1.1:5000',\n  'udp://239.1.1.1:99999',\n]\n";
    let (line, p) = refused(text);
    assert_eq!(line, 5);
    assert_eq!(p, format!("stream 'a' input 2: {}", parse_input("udp://239.1.1.1:99999").unwrap_err()));
    let text = "[[stream]]\nid = 'a'\ninputs = ['udp://239.1.1.1:5000']\noutputs = ['udp://239.1.1.1:5000?ttl=x']\n";
    let (line, p) = refused(text);
    assert_eq!(line, 4);
    assert!(p.starts_with("stream 'a' output 1: "), "{p}");
    let text = "[[stream]]\nid = 'a'\ninputs = ['srt://h:1']\n";
    assert!(refused(text).1.contains("not supported yet"));
    // User info is not echoed by the config layer either.
    let (_, p) = refused("[[stream]]\nid = 'a'\ninputs = ['udp://hunter2pass@239.1.1.1:5000']\n");
    assert!(!p.contains("hunter2pass"), "{p}");
}

#[test]
fn timeouts_are_checked_in_range() {
    let s = |kv: &str| format!("[[stream]]\nid = 'a'\ninputs = ['udp://239.1.1.1:5000']\n{kv}\n");
    assert_eq!(refused(&s("input_timeout = 0.0")), (4, "input_timeout = 0: expected 0.1 to 3600 seconds".into()));
    assert_eq!(refused(&s("input_timeout = nan")).0, 4);
    assert_eq!(refused(&s("failback_after = -1")).0, 4);
    assert_eq!(refused(&s("failback_after = inf")).0, 4);
    assert_eq!(parse_ok(&s("failback_after = 0")).streams[0].failback_after, Duration::ZERO);
}

fn parse_ok(text: &str) -> Config {
    parse(text, "t.toml").unwrap()
}

#[test]
fn only_one_stdout_output_per_node() {
    let s = |id: &str| format!("[[stream]]\nid = '{id}'\ninputs = ['udp://239.1.1.1:5000']\noutputs = ['-']\n");
    let (line, p) = refused(&format!("{}{}", s("a"), s("b")));
    assert_eq!((line, p.as_str()), (8, "stream 'b' output 1: stdout ('-') is already the output of stream 'a'"));
    parse_ok(&s("a"));
}

#[test]
fn file_inputs_resolve_under_their_mount_with_their_options() {
    let t = Tree::new();
    let text = format!(
        "{}[[stream]]\nid = 'a'\ninputs = ['file://media/sub/b.ts?loop=true&pace=pcr', 'file://media/later%20one.ts']\n",
        t.node()
    );
    let c = parse_ok(&text);
    let InputSpec::File { path, looping, pace, .. } = &c.streams[0].inputs[0] else { panic!() };
    assert_eq!((path, *looping, *pace), (&t.media().join("sub/b.ts"), Some(true), Some(Pace::Pcr)));
    // Existence is the input's business at open time.
    let InputSpec::File { path, looping, .. } = &c.streams[0].inputs[1] else { panic!() };
    assert_eq!((path, *looping), (&t.media().join("later one.ts"), None));
}

#[test]
fn file_inputs_outside_mounts_are_refused_at_their_line() {
    let t = Tree::new();
    let s =
        |url: &str| format!("{}[[stream]]\nid = 'a'\ninputs = [\n  'udp://239.1.1.1:5000',\n  '{url}']\n", t.node());
    for url in [
        "/srv/x.ts",
        "x.ts",
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "file://media/../outside/secret.ts",
        "file://media/sub/%2e%2e/%2E%2E/outside/secret.ts",
        "file://media//etc/passwd",
        "file://other/a.ts",
        "file://media/",
        "file://media/a.ts?loop=maybe",
        "file://media/a.ts#frag",
    ] {
        let (line, p) = refused(&s(url));
        assert_eq!(line, 7, "{url}: {p}");
        assert!(p.starts_with("stream 'a' input 2: "), "{url}: {p}");
    }
    assert!(refused(&s("file:///etc/passwd")).1.contains("absolute paths are refused (mounts: media)"));
    assert!(refused(&s("file://other/a.ts")).1.contains("unknown mount 'other' (mounts: media)"));
    assert!(refused(&s("file://media/../x")).1.ends_with("'..' is not allowed in a path under a mount"));
}

#[test]
fn resolve_in_mount_follows_symlinks_inside_and_refuses_escapes() {
    let t = Tree::new();
    let m = t.mounts();
    let outside = t.dir.path().join("outside");
    symlink(&outside, t.media().join("out")).unwrap();
    symlink(outside.join("secret.ts"), t.media().join("leak.ts")).unwrap();
    symlink(t.media().join("sub"), t.media().join("inner")).unwrap();
    symlink(t.dir.path().join("nowhere"), t.media().join("dangling.ts")).unwrap();
    symlink("/", t.media().join("root")).unwrap();

    assert_eq!(resolve_in_mount(&m, "file://media/a.ts"), Ok(t.media().join("a.ts")));
    assert_eq!(resolve_in_mount(&m, "file://media/./sub/b.ts?x=1"), Ok(t.media().join("sub/b.ts")));
    assert_eq!(resolve_in_mount(&m, "file://media/inner/b.ts"), Ok(t.media().join("sub/b.ts")));
    assert_eq!(resolve_in_mount(&m, "file://media/inner/new/c.ts"), Ok(t.media().join("sub/new/c.ts")));
    let escapes = |path: &str| Err(MountError::Escapes { path: path.into(), name: "media".into() });
    assert_eq!(resolve_in_mount(&m, "file://media/out/secret.ts"), escapes("out/secret.ts"));
    assert_eq!(resolve_in_mount(&m, "file://media/out/not-yet.ts"), escapes("out/not-yet.ts"));
    assert_eq!(resolve_in_mount(&m, "file://media/leak.ts"), escapes("leak.ts"));
    assert_eq!(resolve_in_mount(&m, "file://media/root/etc/passwd"), escapes("root/etc/passwd"));
    assert!(matches!(resolve_in_mount(&m, "file://media/dangling.ts"), Err(MountError::Unresolvable { .. })));
    assert_eq!(resolve_in_mount(&m, "file://media/sub/../a.ts"), Err(MountError::DotDot));
    assert_eq!(resolve_in_mount(&m, "file://media/%2e%2e/x"), Err(MountError::DotDot));
    assert_eq!(resolve_in_mount(&m, "file://media/a%2f..%2fb"), Err(MountError::DotDot));
    assert_eq!(resolve_in_mount(&m, "file://media/a%2"), Err(MountError::BadEscape));
    assert_eq!(resolve_in_mount(&m, "file://media/a%+1"), Err(MountError::BadEscape));
    assert_eq!(resolve_in_mount(&m, "file://media/a%00"), Err(MountError::BadEscape));
    assert_eq!(resolve_in_mount(&m, "file://u:p@media/a.ts"), Err(MountError::BadAuthority));
    assert!(matches!(resolve_in_mount(&m, "file:///a.ts"), Err(MountError::AbsolutePath { .. })));
    assert!(matches!(resolve_in_mount(&m, "/srv/a.ts"), Err(MountError::AbsolutePath { .. })));
    assert!(matches!(resolve_in_mount(&m, "FILE://media/a.ts"), Ok(p) if p == t.media().join("a.ts")));
}

#[test]
fn load_bounds_the_file_and_names_it() {
    let t = Tree::new();
    let path = t.dir.path().join("serve.toml");
    std::fs::write(&path, "[[stream]]\nid = 'a'\ninputs = ['udp://239.1.1.1:5000']\n").unwrap();
    assert_eq!(load(&path).unwrap().streams[0].id, "a");
    let shown_path = path.display().to_string();
    std::fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
    assert_eq!(load(&path), Err(ConfigError::TooLarge { file: shown_path.clone() }));
    std::fs::write(&path, b"[node]\n\n# caf\xe9\n").unwrap();
    let err = load(&path).unwrap_err();
    assert_eq!(err.to_string(), format!("config {shown_path}:3: not valid UTF-8"));
    let err = load(&t.dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("config {}", t.dir.path().join("missing.toml").display())));
}

#[test]
fn the_sample_config_parses() {
    let t = Tree::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/serve.toml")).unwrap();
    // Its mount points at a directory of this test's own.
    assert!(text.contains("\"/srv/media\""));
    let c = parse_ok(&text.replace("\"/srv/media\"", &format!("'{}'", t.media().display())));
    assert!(c.node.listen.ip().is_loopback());
    assert!(!c.streams.is_empty());
    assert!(c.streams.iter().any(|s| s.inputs.iter().any(|i| matches!(i, InputSpec::File { .. }))));
}

#[test]
fn streams_cannot_read_themselves_and_mixers_stand_alone() {
    let s = |id: &str, inputs: &str| format!("[[stream]]\nid = '{id}'\ninputs = [{inputs}]\n");
    let (line, p) = refused(&s("a", "'copy://a'"));
    assert_eq!((line, p.as_str()), (3, "stream 'a' input 1: a stream cannot copy itself"));
    let (line, p) = refused(&s("m", "'mixer://v,m'"));
    assert_eq!((line, p.as_str()), (3, "stream 'm' input 1: a stream cannot mix itself"));
    let (_, p) = refused(&s("m", "'udp://239.1.1.1:5000', 'mixer://v,a'"));
    assert_eq!(p, "stream 'm' input 2: a mixer must be its stream's only input");
    // Upstreams are looked up at run time: one defined later, or never, is
    // not a config error.
    let text = format!("{}{}", s("m", "'mixer://v,a?audio_failure=continue'"), s("c", "'copy://m', 'copy://zzz'"));
    let streams = parse(&text, "t.toml").unwrap().streams;
    assert_eq!(streams[1].inputs[0], InputSpec::Copy { stream: "m".into() });
    let mounts = Mounts::new();
    let api = |id: &str, inputs: &[&str]| {
        let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        check_stream(id, &inputs, &[], None, None, &mounts)
    };
    assert_eq!(api("a", &["copy://a"]).unwrap_err(), "stream 'a' input 1: a stream cannot copy itself");
    assert!(api("a", &["copy://b", "mixer://c,d"]).unwrap_err().contains("input 2: a mixer must be"));
    api("a", &["copy://b", "copy://c"]).unwrap();
}
