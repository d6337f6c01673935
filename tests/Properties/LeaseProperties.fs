/// The Leases the protocol writes (docs/PROTOCOL.md §1): registrations and group Leases read back exactly what
/// was written; anything garbled reads as an error or an absence, never an exception; their names are valid and
/// distinct.
module Hybrid.Properties.LeaseProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

/// A node name as Kubernetes allows it, from a small pool (collisions likely) or built label by label.
let private genNode =
    Gen.frequency [ 4, Gen.elements NodePool; 1, Gen.elements [ "worker-1.rack-2.example"; "n"; "ip-10-0-0-1"; String.replicate 63 "a" ] ]

let private genIncarnation = genUInt64 |> Gen.map Incarnation

let private genState =
    Gen.frequency [ 4, Gen.constant Joined; 1, Gen.constant Left; 1, Gen.elements ("" :: NodePool) |> Gen.map Deposed ]

/// The VIP interface's addresses and gateways, as an agent reads them.
let private genInterfaceFacts: Gen<InterfaceFacts> =
    let genAddress =
        Gen.oneof
            [ Gen.map2 (fun a p -> { Address = a; PrefixLength = p }) genUsableV4 (Gen.choose (0, 32))
              Gen.map2 (fun a p -> { Address = a; PrefixLength = p }) genUsableV6 (Gen.choose (0, 128)) ]
    Gen.map2 (fun addresses gateways -> { Addresses = addresses; Gateways = gateways }) (Gen.listOf genAddress) (Gen.listOf genUsableIp)

/// Any registration an agent could write.
let private genRegistration =
    gen {
        let! node = genNode
        let! incarnation = genIncarnation
        let! term = Gen.frequency [ 3, chooseL 0L 10L; 1, chooseL 0L Int64.MaxValue ]
        let! state = genState
        let! fence = Gen.elements [ LanFence; ApiFence ]
        let! fingerprint = genUInt64 |> Gen.map (fun f -> f.ToString "x16")
        let! members = someOf 0 6 NodePool |> Gen.bind (Gen.collectToList (fun n -> chooseL 0L 1000L |> Gen.map (fun t -> n, t)))
        let! deposing = Gen.frequency [ 3, Gen.constant None; 1, Gen.map2 (fun t i -> Some { Target = t; Incarnation = i }) genNode genIncarnation ]
        // A registration records the facts in their canonical order (what the agent reads is normalised).
        let! facts = Gen.frequency [ 1, Gen.constant InterfaceFacts.none; 3, genInterfaceFacts |> Gen.map InterfaceFacts.normalise ]
        return
            { Node = node
              Incarnation = incarnation
              Term = term
              State = state
              Fence = fence
              Fingerprint = fingerprint
              Members = Map.ofList members
              Deposing = deposing
              Interface = facts }
    }

/// What the API server returns after a write: the annotations it kept, at some version.
let private stored (write: LeaseWrite) (version: string) : LeaseRecord =
    { Name = write.Name
      Version = version
      Holder = write.Holder
      Transitions = write.Transitions
      Labels = write.Labels
      Annotations = write.Annotations |> Map.toSeq |> Seq.choose (fun (k, v) -> v |> Option.map (fun v -> k, v)) |> Map.ofSeq }

let private isGroupName (name: string) = name.StartsWith LeaseNames.VipPrefix || name = "plndr-svcs-lock"

[<Property>]
let ``a registration reads back exactly as it was written, every field included`` () =
    forAll genRegistration (fun r ->
        let write = Registration.write (LeaseNames.registration r.Node) (Some "41") 1 r
        let record = stored write "42"
        allOf
            [ holds (sprintf "read %A" (Registration.read record)) (Registration.read record = Ok r)
              holds "classified as a registration" (LeaseKind.ofRecord isGroupName record = RegistrationLease r)
              holds "a CAS from the expected version" (write.Expected = Some "41")
              holds "its holder is the node while Joined, nobody otherwise" (write.Holder = (if r.State = Joined then Some r.Node else None))
              holds "labelled for the agent's watch" (write.Labels.TryFind LeaseKeys.ManagedBy = Some LeaseKeys.ManagedByValue) ]
        |> Prop.classify (match r.State with Deposed _ -> true | _ -> false) "deposed"
        |> Prop.classify r.Deposing.IsSome "with an intent"
        |> Prop.classify r.Members.IsEmpty "no members recorded"
        |> Prop.classify (r.Fence = ApiFence) "API fence armed")

[<Property>]
let ``a rewrite removes what the registration no longer says`` () =
    // Deposed then re-joined, an intent recorded then dropped: a field the new content does not have must go.
    forAll (Gen.two genRegistration) (fun (first, second) ->
        let second = { second with Node = first.Node }
        let write1 = Registration.write (LeaseNames.registration first.Node) None 1 first
        let write2 = Registration.write (LeaseNames.registration first.Node) (Some "1") 1 second
        let merged =
            write2.Annotations
            |> Map.fold (fun (acc: Map<string, string>) k v -> match v with Some v -> acc.Add(k, v) | None -> acc.Remove k) (stored write1 "1").Annotations
        let record = { stored write2 "2" with Annotations = merged }
        holds (sprintf "%A" (Registration.read record)) (Registration.read record = Ok second)
        |> Prop.classify (first.Deposing.IsSome && second.Deposing.IsNone) "intent dropped"
        |> Prop.classify ((match first.State with Deposed _ -> true | _ -> false) && second.State = Joined) "deposed, then joined")

/// The required annotations, each with texts it must refuse.
let private garbled =
    [ LeaseKeys.Node, [ "" ]
      LeaseKeys.Incarnation, [ ""; "123"; "0123456789abcdeg"; "0x0123456789abcd"; " 0123456789abcde"; "01234567890abcdef" ]
      LeaseKeys.Term, [ ""; "-1"; "one"; "1.5"; "99999999999999999999" ]
      LeaseKeys.State, [ ""; "Joined"; "gone"; "joined " ]
      LeaseKeys.Fence, [ ""; "LAN"; "none" ]
      LeaseKeys.Fingerprint, [ "" ]
      LeaseKeys.Members, [ "a"; "a=1,b"; "a=x"; "a=1,,b=2"; "=1" ]
      LeaseKeys.Deposing, [ "node-a"; "node-a/12"; "/0123456789abcdef"; "node-a/0123456789abcdeg" ] ]

[<Property>]
let ``a registration with a missing or garbled annotation is an error that names it`` () =
    let genCase =
        gen {
            let! r = genRegistration
            let! key, bad = Gen.elements garbled
            let! text = Gen.elements bad
            let! missing = if key = LeaseKeys.Deposing then Gen.constant false else bool 1 2
            return r, key, (if missing then None else Some text)
        }
    forAll genCase (fun (r, key, text) ->
        let record = stored (Registration.write (LeaseNames.registration r.Node) None 1 r) "1"
        let record =
            { record with
                Annotations = (match text with Some t -> record.Annotations.Add(key, t) | None -> record.Annotations.Remove key) }
        let expected = match text with Some t -> BadField(key, t) | None -> MissingField key
        allOf
            [ holds (sprintf "%A" (Registration.read record)) (Registration.read record = Error expected)
              holds "classified as unreadable" (LeaseKind.ofRecord isGroupName record = UnreadableRegistration(record.Name, expected)) ]
        |> Prop.collect (key.Substring(key.IndexOf '/' + 1) + (if text.IsNone then " missing" else " garbled")))

let private genText =
    Gen.oneof
        [ Gen.elements [ ""; "joined"; "left"; "deposed"; "lan"; "api"; "0123456789abcdef"; "node-a=1"; "node-a/0123456789abcdef"; "-"; "="; "/" ]
          Gen.listOf (Gen.elements [ 'a'; 'f'; '0'; '9'; '='; ','; '/'; ' '; '-'; 'ä'; '\000' ]) |> Gen.map (fun cs -> String(Array.ofList cs)) ]

[<Property(MaxTest = 300)>]
let ``any annotations at all read as a registration or an error, never an exception`` () =
    let keys = [ LeaseKeys.Node; LeaseKeys.Incarnation; LeaseKeys.Term; LeaseKeys.State; LeaseKeys.DeposedBy; LeaseKeys.Fence; LeaseKeys.Fingerprint; LeaseKeys.Members; LeaseKeys.Deposing; "other" ]
    let valid =
        Map
            [ LeaseKeys.Node, [ "node-a" ]
              LeaseKeys.Incarnation, [ "0123456789abcdef" ]
              LeaseKeys.Term, [ "0"; "3" ]
              LeaseKeys.State, [ "joined"; "left"; "deposed" ]
              LeaseKeys.DeposedBy, [ "node-b"; "" ]
              LeaseKeys.Fence, [ "lan"; "api" ]
              LeaseKeys.Fingerprint, [ "00000000000000aa" ]
              LeaseKeys.Members, [ ""; "node-b=1,node-c=2" ]
              LeaseKeys.Deposing, [ ""; "node-b/0123456789abcdef" ]
              "other", [ "x" ] ]
    // Mostly valid values, so that every field is reached: each annotation valid, absent or any text.
    let genAnnotations =
        keys
        |> Gen.collectToList (fun k ->
            Gen.frequency [ 12, Gen.elements valid[k] |> Gen.map Some; 1, Gen.constant None; 1, genText |> Gen.map Some ] |> Gen.map (fun v -> k, v))
    forAll genAnnotations (fun pairs ->
        let record =
            { Name = "hybrid-node-x"; Version = "1"; Holder = None; Transitions = 0
              Labels = Map [ LeaseKeys.Kind, LeaseKeys.RegistrationKind ]
              Annotations = pairs |> List.choose (fun (k, v) -> v |> Option.map (fun v -> k, v)) |> Map.ofList }
        match LeaseKind.ofRecord isGroupName record with
        | RegistrationLease r -> holds "read" (r.Node <> "" && r.Term >= 0L) |> Prop.collect "readable"
        | UnreadableRegistration(_, problem) -> holds "unreadable" true |> Prop.collect (match problem with MissingField _ -> "missing" | BadField _ -> "garbled")
        | other -> holds (sprintf "%A" other) false)

[<Property>]
let ``a group Lease names the holder and incarnation written, or nobody; an unreadable incarnation is absent`` () =
    let genCase =
        gen {
            let! holder = Gen.frequency [ 1, Gen.constant None; 4, Gen.map2 (fun n i -> Some { Node = n; Incarnation = i }) genNode (Gen.optionOf genIncarnation) ]
            let! address = genUsableIp
            let! garble = Gen.frequency [ 4, Gen.constant None; 1, genText |> Gen.map Some ]
            return holder, address, garble
        }
    forAll genCase (fun (holder, address, garble) ->
        let name = LeaseNames.group address
        let record = stored (GroupLeases.write name None 3 holder) "5"
        let record =
            match garble with
            | Some t -> { record with Annotations = record.Annotations.Add(LeaseKeys.Incarnation, t) }
            | None -> record
        let expected =
            match holder, garble with
            | Some h, Some t -> Some { h with Incarnation = Incarnation.parse t }
            | h, _ -> h
        allOf
            [ holds (sprintf "%A" (LeaseKind.ofRecord isGroupName record)) (LeaseKind.ofRecord isGroupName record = GroupLease expected)
              holds "labelled as a group" (record.Labels.TryFind LeaseKeys.Kind = Some LeaseKeys.GroupKind)
              holds "transitions kept" (record.Transitions = 3) ]
        |> Prop.classify holder.IsNone "nobody"
        |> Prop.classify (holder |> Option.exists (fun h -> h.Incarnation.IsNone)) "written by an older agent"
        |> Prop.classify garble.IsSome "incarnation garbled")

[<Property>]
let ``a Lease that is neither a registration nor a group is another controller's`` () =
    forAll (Gen.elements [ "plndr-cp-lock"; "kube-scheduler"; "hybrid-nodex"; "cilium-l2announce-x" ]) (fun name ->
        let record = { Name = name; Version = "1"; Holder = Some "node-a"; Transitions = 0; Labels = Map.empty; Annotations = Map.empty }
        holds "other" (LeaseKind.ofRecord isGroupName record = OtherLease))

[<Property>]
let ``an incarnation reads back from its text, and only 16 hex digits read as one`` () =
    forAll (Gen.oneof [ genIncarnation |> Gen.map (fun i -> string i, Some i); genText |> Gen.map (fun t -> t, None) ]) (fun (text, expected) ->
        match expected with
        | Some i -> holds (sprintf "%s -> %A" text (Incarnation.parse text)) (text.Length = 16 && Incarnation.parse text = Some i)
        | None ->
            let parsed = Incarnation.parse text
            holds (sprintf "%A -> %A" text parsed) (parsed.IsNone || (text.Length = 16 && text |> Seq.forall Char.IsAsciiHexDigit)))

// ── Lease names ─────────────────────────────────────────────────────────────────────────────────────

/// Kubernetes' IsDNS1123Subdomain, which a Lease name must pass.
let private isDns1123Subdomain (s: string) =
    s.Length <= 253 && System.Text.RegularExpressions.Regex.IsMatch(s, "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

let private genLabel (length: int) =
    let alnum = Gen.elements ([ 'a' .. 'z' ] @ [ '0' .. '9' ])
    let inner = Gen.elements ([ 'a' .. 'z' ] @ [ '0' .. '9' ] @ [ '-'; '-' ])
    if length = 1 then alnum |> Gen.map string
    else Gen.map3 (fun a (m: char list) b -> string a + String(Array.ofList m) + string b) alnum (Gen.listOfLength (length - 2) inner) alnum

/// A valid node name (DNS subdomain) of up to `budget` characters, built label by label.
let rec private genSubdomain (maxLabel: int) (budget: int) : Gen<string list> =
    if budget <= 0 then Gen.constant []
    else
        gen {
            let! length = Gen.choose (1, min maxLabel budget)
            let! label = genLabel length
            let! rest = genSubdomain maxLabel (budget - length - 1)
            return label :: rest
        }

let private genNodeName =
    gen {
        let! budget = Gen.frequency [ 2, Gen.choose (1, 40); 3, Gen.choose (225, 253) ]
        let! maxLabel = Gen.elements [ 3; 8; 63 ]
        let! labels = genSubdomain maxLabel budget
        return String.concat "." labels
    }

[<Property>]
let ``registration Lease names are valid and distinct for every node name`` () =
    forAll (Gen.two genNodeName) (fun (a, b) ->
        let la, lb = LeaseNames.registration a, LeaseNames.registration b
        allOf
            [ holds (sprintf "node %s (%d chars): lease %s" a a.Length la) (isDns1123Subdomain la)
              holds (sprintf "node %s: lease %s" b lb) (isDns1123Subdomain lb)
              holds (sprintf "%s and %s share %s" a b la) ((la = lb) = (a = b)) ]
        |> Prop.classify (a.Length + LeaseNames.RegistrationPrefix.Length > 253) "long name (shortened)")

/// Kubernetes' IsValidLabelValue, which the API server applies to every label (the emulator too).
let private isLabelValue (s: string) =
    s.Length <= 63 && System.Text.RegularExpressions.Regex.IsMatch(s, "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

[<Property>]
let ``a registration's labels are valid label values whatever the node name, which goes only where any text may`` () =
    forAll (Gen.map2 (fun (r: Registration) name -> { r with Node = name }) genRegistration genNodeName) (fun r ->
        let write = Registration.write (LeaseNames.registration r.Node) None 1 r
        allOf
            [ holds (sprintf "labels %A" write.Labels) (write.Labels |> Map.forall (fun k v -> isLabelValue v && k.Length > 0))
              holds (sprintf "node %s in a label" r.Node) (write.Labels |> Map.forall (fun _ v -> v <> r.Node))
              holds "the node name reads back from the annotations" (write.Annotations.TryFind LeaseKeys.Node = Some(Some r.Node)) ]
        |> Prop.classify (r.Node.Length > 63) "node name longer than a label value")

[<Property>]
let ``group Lease names are valid and distinct for every address`` () =
    forAll (Gen.two genIp) (fun (a, b) ->
        let la, lb = LeaseNames.group a, LeaseNames.group b
        allOf
            [ holds (sprintf "%s: %s" (Ip.format a) la) (isDns1123Subdomain la)
              holds (sprintf "%s and %s share %s" (Ip.format a) (Ip.format b) la) ((la = lb) = (a = b)) ]
        |> Prop.classify (Ip.family a = IPv6) "IPv6")
