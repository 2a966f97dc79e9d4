//! The answer of `status 3` (tab-separated) or `status 2` (comma-separated): the client
//! list of a server, found by the column names of its `HEADER,CLIENT_LIST` line (so an
//! added column in a later OpenVPN does not shift the others).

use std::net::{Ipv4Addr, Ipv6Addr};

/// One client row of `status 2` / `status 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusClient {
    pub common_name: String,
    /// `ip:port`
    pub real_address: String,
    pub virtual_address: Option<Ipv4Addr>,
    /// `Virtual IPv6 Address` (None when the column is absent or empty).
    pub virtual_ipv6_address: Option<Ipv6Addr>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub connected_since: u64,
    pub username: Option<String>,
    pub cid: u64,
}

/// Errors of [`parse_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("not a status 2/3 answer (no TITLE line)")]
    NotStatus,
    #[error("status answer has no CLIENT_LIST header")]
    NoHeader,
    #[error("status column {0:?} missing")]
    MissingColumn(&'static str),
}

/// Parses the block of `status 3` (tabs) or `status 2` (commas). Rows that cannot be used
/// (unparsable numbers, clients still authenticating) are skipped.
pub fn parse_status(lines: &[String]) -> Result<Vec<StatusClient>, StatusError> {
    let first = lines.first().ok_or(StatusError::NotStatus)?;
    let sep = if first.starts_with("TITLE\t") {
        '\t'
    } else if first.starts_with("TITLE,") {
        ','
    } else {
        return Err(StatusError::NotStatus);
    };
    let header: Vec<&str> = lines
        .iter()
        .map(|l| l.split(sep).collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == "HEADER" && f[1] == "CLIENT_LIST")
        .ok_or(StatusError::NoHeader)?
        .into_iter()
        .skip(1)
        .collect();
    let col = |name: &'static str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(StatusError::MissingColumn(name))
    };
    let c_cn = col("Common Name")?;
    let c_real = col("Real Address")?;
    let c_virt = col("Virtual Address")?;
    let c_virt6 = col("Virtual IPv6 Address").ok();
    let c_rx = col("Bytes Received")?;
    let c_tx = col("Bytes Sent")?;
    let c_since = col("Connected Since (time_t)")?;
    let c_user = col("Username")?;
    let c_cid = col("Client ID")?;
    let mut out = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(sep).collect();
        if f.first() != Some(&"CLIENT_LIST") {
            continue;
        }
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let (Ok(rx), Ok(tx), Ok(since), Ok(cid)) = (
            get(c_rx).parse::<u64>(),
            get(c_tx).parse::<u64>(),
            get(c_since).parse::<u64>(),
            get(c_cid).parse::<u64>(),
        ) else {
            continue;
        };
        let username = match get(c_user) {
            "" | "UNDEF" => None,
            u => Some(u.to_string()),
        };
        out.push(StatusClient {
            common_name: get(c_cn).to_string(),
            real_address: get(c_real).to_string(),
            virtual_address: get(c_virt).parse().ok(),
            virtual_ipv6_address: c_virt6.and_then(|c| get(c).parse().ok()),
            bytes_received: rx,
            bytes_sent: tx,
            connected_since: since,
            username,
            cid,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS3: &str = "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu\n\
TIME\t2026-11-22 15:00:00\t1795100000\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n\
CLIENT_LIST\tclient1\t192.0.2.7:50123\t10.8.0.6\t\t3964\t3202\t2026-11-22 14:59:00\t1795099940\tck-1\t0\t0\tAES-256-GCM\n\
CLIENT_LIST\tUNDEF\t192.0.2.8:40000\t\t\t100\t200\t2026-11-22 14:59:59\t1795099999\tUNDEF\t1\t1\tNone\n\
CLIENT_LIST\tbad\t192.0.2.9:1\t10.8.0.7\t\tNaN\t1\tx\t1\tu\t2\t2\tx\n\
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n\
ROUTING_TABLE\t10.8.0.6\tclient1\t192.0.2.7:50123\t2026-11-22 15:00:00\t1795100000\n\
GLOBAL_STATS\tMax bcast/mcast queue length\t0\n";

    /// Moved from adapter-server's mgmt.
    #[test]
    fn status3_parses() {
        let lines: Vec<String> = STATUS3.lines().map(str::to_string).collect();
        let cl = parse_status(&lines).expect("status");
        assert_eq!(cl.len(), 2);
        assert_eq!(
            cl[0],
            StatusClient {
                common_name: "client1".into(),
                real_address: "192.0.2.7:50123".into(),
                virtual_address: Some(Ipv4Addr::new(10, 8, 0, 6)),
                virtual_ipv6_address: None,
                bytes_received: 3964,
                bytes_sent: 3202,
                connected_since: 1795099940,
                username: Some("ck-1".into()),
                cid: 0,
            }
        );
        assert_eq!(cl[1].username, None);
        assert_eq!(cl[1].virtual_address, None);
        // status 2 (commas) with the same content
        let v2: Vec<String> = STATUS3.lines().map(|l| l.replace('\t', ",")).collect();
        assert_eq!(parse_status(&v2).expect("v2"), cl);
        assert_eq!(
            parse_status(&["garbage".to_string()]),
            Err(StatusError::NotStatus)
        );
        assert_eq!(
            parse_status(&["TITLE\tx".to_string()]),
            Err(StatusError::NoHeader)
        );
        assert_eq!(parse_status(&[]), Err(StatusError::NotStatus));
    }

    /// The IPv6 column is read when present (a server with `server-ipv6`), and its absence
    /// (older formats) is not an error; the required columns are.
    #[test]
    fn status3_ipv6_column() {
        let with_v6 = STATUS3.replace("10.8.0.6\t\t3964", "10.8.0.6\tfd00:8::1000\t3964");
        let lines: Vec<String> = with_v6.lines().map(str::to_string).collect();
        let cl = parse_status(&lines).expect("status");
        assert_eq!(
            cl[0].virtual_ipv6_address,
            Some("fd00:8::1000".parse().expect("addr"))
        );
        let no_col = "TITLE,x\nHEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Bytes Received,Bytes Sent,Connected Since (time_t),Username,Client ID\nCLIENT_LIST,c,192.0.2.7:1,10.8.0.9,5,6,7,u,3\n";
        let lines: Vec<String> = no_col.lines().map(str::to_string).collect();
        let cl = parse_status(&lines).expect("status");
        assert_eq!(cl.len(), 1);
        assert_eq!(cl[0].virtual_ipv6_address, None);
        assert_eq!(cl[0].virtual_address, Some(Ipv4Addr::new(10, 8, 0, 9)));
        let missing = "TITLE,x\nHEADER,CLIENT_LIST,Common Name,Real Address\n";
        let lines: Vec<String> = missing.lines().map(str::to_string).collect();
        assert_eq!(
            parse_status(&lines),
            Err(StatusError::MissingColumn("Virtual Address"))
        );
    }
}
