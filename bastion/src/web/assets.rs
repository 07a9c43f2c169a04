//! Static files served from the binary (no CDN: the console runs offline): the vendored
//! asciinema-player (npm `asciinema-player`, version in `web-assets/asciinema-player/VERSION`,
//! refreshed by `scripts/refresh-asciinema-player.sh`), and the console's own script and style.

/// One file: its name under `/assets/`, content type and bytes.
pub struct Asset {
    /// Name under `/assets/`.
    pub name: &'static str,
    /// Content-Type.
    pub content_type: &'static str,
    /// The bytes.
    pub bytes: &'static [u8],
}

/// Every asset.
pub const ASSETS: [Asset; 5] = [
    Asset {
        name: "asciinema-player.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web-assets/asciinema-player/asciinema-player.min.js"),
    },
    Asset {
        name: "asciinema-player.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web-assets/asciinema-player/asciinema-player.css"),
    },
    Asset {
        name: "asciinema-player-LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../web-assets/asciinema-player/LICENSE"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web-assets/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web-assets/console.css"),
    },
];

/// The asset called `name`, if any (names are compared whole: no paths).
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}
