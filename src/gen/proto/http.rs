//! HTTP/1.1 requests and response headers.

/// A GET request as a browser-like client sends it.
pub fn request(out: &mut Vec<u8>, host: &str, path: &str) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 \
          Firefox/121.0\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n\
          Connection: keep-alive\r\n\r\n",
    );
}

/// The header of a 200 response whose body is `body_len` bytes.
pub fn response_header(out: &mut Vec<u8>, body_len: usize) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\n\
          Content-Length: ",
    );
    out.extend_from_slice(body_len.to_string().as_bytes());
    out.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_are_crlf_framed() {
        let mut r = Vec::new();
        request(&mut r, "example.org", "/x");
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("GET /x HTTP/1.1\r\nHost: example.org\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(text.matches("\r\n").count(), 7);
        let mut h = Vec::new();
        response_header(&mut h, 1234);
        let text = String::from_utf8(h).unwrap();
        assert!(text.contains("\r\nContent-Length: 1234\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
