//! Importing images through `fwu`: an image of another release than its
//! build is refused before it can be flashed and reported as a success.

mod common;

use common::{fixture, Bench, ARCHER_24};

#[tokio::test]
async fn an_image_of_another_release_is_refused_and_leaves_nothing() {
    let bench = Bench::start(Vec::new()).await;
    bench.fwu(&["category", "add", "WiFi"]).await.expect_code(0);
    bench
        .fwu(&["build", "add", "WiFi", "23.05.3"])
        .await
        .expect_code(0);
    let image = fixture(ARCHER_24);
    let image = image.to_str().unwrap();

    let refused = bench
        .fwu(&["image", "import", "WiFi", "23.05.3", image])
        .await;
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("holds release 24.10.0, but the build's version is 23.05.3"),
        "{refused}"
    );
    let stored = std::fs::read_dir(bench.scratch("data").join("images"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "a refused image leaves no file");
    let listed = bench
        .fwu(&["--json", "image", "list", "WiFi", "23.05.3"])
        .await;
    assert_eq!(listed.expect_code(0).json(), serde_json::json!([]));

    // Into the build of its own release it goes, and fills its identifier.
    bench
        .fwu(&["build", "add", "WiFi", "24.10.0"])
        .await
        .expect_code(0);
    bench
        .fwu(&["image", "import", "WiFi", "24.10.0", image])
        .await
        .expect_code(0);
    let builds = bench.fwu(&["--json", "build", "list", "WiFi"]).await.json();
    let filled = builds
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["version"] == "24.10.0")
        .unwrap();
    assert_eq!(filled["os_identifier"], "OpenWrt 24.10.0 r28427-6df0e3d02a");
    bench.stop().await;
}
