//! QR codes as SVG: what a ticket page, `GET /bookings/{id}/ticket.svg` and the confirmation
//! email show a door scanner. One renderer, so that every copy of a ticket scans alike.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// `text` as a QR code in an SVG document: error correction level M (a creased or dimmed phone
/// screen still scans), a quiet zone of four modules, black on white, at least `size` pixels
/// wide. `None` when `text` is too long for any QR code (a ticket code never is).
pub fn svg(text: &str, size: u32) -> Option<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(size, size)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_svg_document_and_refuses_what_no_qr_code_holds() {
        let image = svg("ABC-123", 200).unwrap();
        assert!(image.starts_with("<?xml"), "{image}");
        assert!(image.contains("<svg") && image.contains("</svg>"));
        assert!(image.contains("#000000"));
        // Different texts, different pictures.
        assert_ne!(image, svg("ABC-124", 200).unwrap());
        assert!(svg(&"x".repeat(8000), 200).is_none());
    }
}
