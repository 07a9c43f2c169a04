pub fn x() {}
pub mod recording;
