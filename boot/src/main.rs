mod fstool;
fn main() {}
