//! Domain names in wire format: lower-casing for lookups, presentation format for logs, and
//! from presentation format for configured names.

/// Lower-cases a wire-format name into `buf`; returns its length.
pub fn lowercase_name(name: &[u8], buf: &mut [u8; 255]) -> usize {
    let n = name.len().min(255);
    for (dst, src) in buf.iter_mut().zip(&name[..n]) {
        *dst = src.to_ascii_lowercase();
    }
    n
}

/// A wire-format name in presentation format, for logs.
pub fn display_name(name: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        if len == 0 || len > 63 {
            break;
        }
        let label = name.get(at + 1..at + 1 + len as usize).unwrap_or_default();
        out.push_str(&String::from_utf8_lossy(label));
        out.push('.');
        at += len as usize + 1;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Converts a presentation-format domain to wire format (lower case, with the root label).
pub fn name_to_wire(domain: &str) -> Vec<u8> {
    name_to_wire_keep_case(&domain.to_ascii_lowercase())
}

/// Converts a presentation-format domain to wire format, keeping its case (for tests and probes).
pub fn name_to_wire_keep_case(domain: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 2);
    for label in domain
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}
