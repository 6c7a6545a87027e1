//! Every scanner kernel gives the same report on every real fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use uringest::ts::analyze::Analyzer;
use uringest::ts::scan::Kernel;

#[test]
fn all_kernels_report_the_same_on_fixtures() {
    for name in ["h264_aac.ts", "mpts_3prog.ts", "h264_aac_192.m2ts", "cbr_5mbit.ts"] {
        let bytes = std::fs::read(common::fixture(name)).unwrap();
        let mut reports = Vec::new();
        for kernel in [Kernel::Scalar, Kernel::Sse2, Kernel::Avx2] {
            let Some(mut analyzer) = Analyzer::with_kernel(kernel) else { continue };
            analyzer.analyze(&bytes, None);
            let mut report = serde_json::to_value(analyzer.report(name)).unwrap();
            report["scanner"] = serde_json::Value::Null;
            reports.push((kernel, report));
        }
        assert!(reports[0].1["ts_packets"].as_u64().unwrap() > 400, "{name}");
        for (kernel, report) in &reports[1..] {
            assert_eq!(report, &reports[0].1, "{name}: {kernel:?} differs from scalar");
        }
    }
}
