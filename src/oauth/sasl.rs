//! SASL responses carrying an access token, for async-imap's `authenticate`.
//!
//! Both are stateful: the first challenge gets the token; a second challenge is the
//! server's error report (base64 JSON), answered with the empty response (XOAUTH2) or
//! `%x01` (OAUTHBEARER, RFC 7628 3.2.3) so the server ends the exchange with NO.

use crate::config::Secret;

/// Google's and Microsoft's XOAUTH2: `user=U ^A auth=Bearer T ^A ^A`.
pub struct XOAuth2<'a> {
    pub user: &'a str,
    pub token: &'a Secret,
    answered: bool,
}

impl<'a> XOAuth2<'a> {
    pub fn new(user: &'a str, token: &'a Secret) -> XOAuth2<'a> {
        XOAuth2 {
            user,
            token,
            answered: false,
        }
    }
}

impl async_imap::Authenticator for XOAuth2<'_> {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        if std::mem::replace(&mut self.answered, true) {
            return String::new();
        }
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.user,
            self.token.expose()
        )
    }
}

/// RFC 7628 OAUTHBEARER: `n,a=U, ^A host=H ^A port=P ^A auth=Bearer T ^A ^A`.
pub struct OAuthBearer<'a> {
    pub user: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub token: &'a Secret,
    answered: bool,
}

impl<'a> OAuthBearer<'a> {
    pub fn new(user: &'a str, host: &'a str, port: u16, token: &'a Secret) -> OAuthBearer<'a> {
        OAuthBearer {
            user,
            host,
            port,
            token,
            answered: false,
        }
    }
}

impl async_imap::Authenticator for OAuthBearer<'_> {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        if std::mem::replace(&mut self.answered, true) {
            return "\x01".to_string();
        }
        // RFC 5801: `,` and `=` in the authorization identity are escaped.
        let user = self.user.replace('=', "=3D").replace(',', "=2C");
        format!(
            "n,a={user},\x01host={}\x01port={}\x01auth=Bearer {}\x01\x01",
            self.host,
            self.port,
            self.token.expose()
        )
    }
}

#[cfg(test)]
mod tests {
    use async_imap::Authenticator;

    use super::*;

    #[test]
    fn xoauth2_answers_once_then_empty() {
        let token = Secret::new("tok");
        let mut auth = XOAuth2::new("support@example.com", &token);
        assert_eq!(
            auth.process(b""),
            "user=support@example.com\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(auth.process(b"{\"status\":\"401\"}"), "");
    }

    #[test]
    fn oauthbearer_follows_rfc_7628() {
        let token = Secret::new("tok");
        let mut auth = OAuthBearer::new("a,b=c@example.com", "imap.example.com", 993, &token);
        assert_eq!(
            auth.process(b""),
            "n,a=a=2Cb=3Dc@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(auth.process(b"{\"status\":\"invalid_token\"}"), "\x01");
    }
}
