//! QR codes as SVG: what a ticket page, `GET /bookings/{id}/ticket.svg` and the confirmation
//! email show a door scanner. One renderer, so that every copy of a ticket scans alike.
//!
//! Every confirmation email carries one, so it must be cheap: the `qrcode` crate encodes (data,
//! error correction, the module layout), and two things are done here rather than by its
//! defaults, which cost about 0.8 ms per code:
//! - the data mask is fixed (checkerboard) instead of chosen by scoring all eight: any of the
//!   eight is valid (ISO/IEC 18004 §7.8), the score only avoids patterns that are harder for
//!   some scanners, and a phone reads a checkerboard-masked code at this size without trouble;
//! - the SVG is one `<path>` of horizontal runs instead of one `<rect>` per dark module.

use std::fmt::Write as _;

use qrcode::bits::encode_auto;
use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::ec::construct_codewords;
use qrcode::{Color, EcLevel};

/// Light modules around the code, as the standard asks.
const QUIET_ZONE: usize = 4;

/// `text` as a QR code in an SVG document: error correction level M (a creased or dimmed phone
/// screen still scans), a quiet zone of four modules, black on white, `size` pixels wide (the
/// picture scales; its modules stay square). `None` when `text` is too long for any QR code (a
/// ticket code never is).
pub fn svg(text: &str, size: u32) -> Option<String> {
    let (modules, width) = modules(text.as_bytes())?;
    let side = width + 2 * QUIET_ZONE;
    let mut path = String::with_capacity(modules.len() * 3);
    for (y, row) in modules.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] != Color::Dark {
                x += 1;
                continue;
            }
            let run = row[x..].iter().take_while(|c| **c == Color::Dark).count();
            let _ = write!(
                path,
                "M{} {}h{run}v1h-{run}z",
                x + QUIET_ZONE,
                y + QUIET_ZONE
            );
            x += run;
        }
    }
    Some(format!(
        "<?xml version=\"1.0\" standalone=\"yes\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{size}\" \
         height=\"{size}\" viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#ffffff\"/>\
         <path fill=\"#000000\" d=\"{path}\"/></svg>\n"
    ))
}

/// The modules of the QR code of `data`, row by row, and the code's width in modules.
fn modules(data: &[u8]) -> Option<(Vec<Color>, usize)> {
    let level = EcLevel::M;
    let bits = encode_auto(data, level).ok()?;
    let version = bits.version();
    let (data, ec) = construct_codewords(&bits.into_bytes(), version, level).ok()?;
    let mut canvas = Canvas::new(version, level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    canvas.apply_mask(MaskPattern::Checkerboard);
    let width = usize::try_from(version.width()).ok()?;
    Some((canvas.into_colors(), width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_svg_document_and_refuses_what_no_qr_code_holds() {
        let image = svg("ABC-123", 200).unwrap();
        assert!(image.starts_with("<?xml"), "{image}");
        assert!(image.contains("<svg") && image.contains("</svg>"));
        assert!(image.contains("width=\"200\""));
        // Different texts, different pictures.
        assert_ne!(image, svg("ABC-124", 200).unwrap());
        assert!(svg(&"x".repeat(8000), 200).is_none());
    }

    #[test]
    fn the_picture_is_the_encoders_modules() {
        // The three finder patterns: 7×7 dark rings in three corners of the module grid.
        let (modules, width) = modules(b"a ticket code").unwrap();
        assert_eq!(modules.len(), width * width);
        let dark = |x: usize, y: usize| modules[y * width + x] == Color::Dark;
        for (x0, y0) in [(0, 0), (width - 7, 0), (0, width - 7)] {
            for i in 0..7 {
                assert!(
                    dark(x0 + i, y0) && dark(x0 + i, y0 + 6),
                    "ring at {x0},{y0}"
                );
                assert!(
                    dark(x0, y0 + i) && dark(x0 + 6, y0 + i),
                    "ring at {x0},{y0}"
                );
            }
            assert!(
                !dark(x0 + 1, y0 + 1),
                "the ring's light inside at {x0},{y0}"
            );
        }
        // Every dark module becomes exactly one unit of the path's runs.
        let image = svg("a ticket code", 100).unwrap();
        let path = image
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let runs: usize = path
            .split('h')
            .skip(1)
            .step_by(2)
            .map(|run| run.split('v').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(runs, modules.iter().filter(|c| **c == Color::Dark).count());
    }

    #[test]
    fn a_decoder_reads_back_what_was_encoded() {
        // A ticket code's length (130) and alphabet; rqrr is an independent decoder.
        let text = &"AQGaQ3kAAHcAsR2fJw0y2Q8Bmp0D5Xy-_".repeat(4)[..130];
        let (modules, width) = modules(text.as_bytes()).unwrap();
        let scale = 4;
        let side = (width + 2 * QUIET_ZONE) * scale;
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            let (mx, my) = (x / scale, y / scale);
            let inside = QUIET_ZONE..QUIET_ZONE + width;
            let dark = inside.contains(&mx)
                && inside.contains(&my)
                && modules[(my - QUIET_ZONE) * width + mx - QUIET_ZONE] == Color::Dark;
            if dark { 0 } else { 255 }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, text);
    }
}
