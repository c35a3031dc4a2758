fn main() {
    print!("{}", runwarden::crd::to_yaml().unwrap());
}
