//! Stratum v1 mining protocol: newline-terminated JSON-RPC as cpuminer
//! 2.5.1 and a typical pool exchange it (client requests with spaces after
//! the colons, compact server replies).

use std::fmt::Write;

/// `mining.subscribe` with the miner's user agent.
pub fn subscribe(id: u32, agent: &str) -> String {
    format!("{{\"id\": {id}, \"method\": \"mining.subscribe\", \"params\": [\"{agent}\"]}}\n")
}

/// The pool's subscription result: notification ids, extranonce1 and the
/// extranonce2 size.
pub fn subscribe_result(id: u32, session: &str, extranonce1: &str) -> String {
    format!(
        "{{\"id\":{id},\"result\":[[[\"mining.set_difficulty\",\"{session}\"],\
         [\"mining.notify\",\"{session}\"]],\"{extranonce1}\",4],\"error\":null}}\n"
    )
}

/// `mining.authorize` with a wallet-style worker name.
pub fn authorize(id: u32, worker: &str, password: &str) -> String {
    format!(
        "{{\"id\": {id}, \"method\": \"mining.authorize\", \"params\": [\"{worker}\", \"{password}\"]}}\n"
    )
}

/// A `{"id":N,"result":true}` reply (authorize and submit acceptances).
pub fn ok(id: u32) -> String {
    format!("{{\"id\":{id},\"result\":true,\"error\":null}}\n")
}

pub fn set_difficulty(difficulty: &str) -> String {
    format!("{{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[{difficulty}]}}\n")
}

/// A `mining.notify` job: previous-hash, coinbase halves, merkle branches
/// (hex strings supplied by the caller), version, nbits, ntime.
pub fn notify(
    job: &str,
    prevhash: &str,
    coinb1: &str,
    coinb2: &str,
    branches: &[String],
    ntime: u32,
    clean: bool,
) -> String {
    let mut list = String::new();
    for (i, b) in branches.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(list, "\"{b}\"");
    }
    format!(
        "{{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"{job}\",\"{prevhash}\",\
         \"{coinb1}\",\"{coinb2}\",[{list}],\"20000000\",\"1703a30c\",\"{ntime:08x}\",{clean}]}}\n"
    )
}

/// `mining.submit` of a share (cpuminer puts "method" first).
pub fn submit(
    id: u32,
    worker: &str,
    job: &str,
    extranonce2: u32,
    ntime: u32,
    nonce: u32,
) -> String {
    format!(
        "{{\"method\": \"mining.submit\", \"params\": [\"{worker}\", \"{job}\", \"{extranonce2:08x}\", \
         \"{ntime:08x}\", \"{nonce:08x}\"], \"id\":{id}}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_single_json_lines() {
        let msgs = [
            subscribe(1, "cpuminer/2.5.1"),
            subscribe_result(1, "ab12", "0800ffee"),
            authorize(2, "bc1qexample.rig", "x"),
            ok(2),
            set_difficulty("0.5"),
            notify(
                "1f",
                "00",
                "01",
                "02",
                &["aa".into(), "bb".into()],
                0x6650_0000,
                true,
            ),
            submit(4, "bc1qexample.rig", "1f", 1, 0x6650_0000, 0xdeadbeef),
        ];
        for m in &msgs {
            assert!(m.ends_with('\n'));
            assert_eq!(m.matches('\n').count(), 1);
            let v: serde_json::Value = serde_json::from_str(m.trim_end()).expect(m);
            assert!(v.get("id").is_some());
        }
        let n: serde_json::Value = serde_json::from_str(msgs[5].trim_end()).unwrap();
        assert_eq!(n["method"], "mining.notify");
        assert_eq!(n["params"][4][1], "bb");
        assert!(msgs[6].contains("\"deadbeef\""));
    }
}
